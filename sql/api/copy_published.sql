-- Copy one published table (name from data_contracts/platform_datasets.yaml, a plain identifier,
-- never from a request) into the in-memory copy.
CREATE TABLE main.{table} AS SELECT * FROM wh.main.{table}
