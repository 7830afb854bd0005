"""Mobility indicators (docs/indicators.md): unique subscribers per district and local day or
hour, daily locations (FlowKit last / modal) counted per district, and origin-destination flows
between districts, per LOCAL day, published k-anonymised."""
