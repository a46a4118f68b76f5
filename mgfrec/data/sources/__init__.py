"""Built-in data sources (kind ``data_source``); each turns raw input into a :class:`~mgfrec.data.raw.RawLog`."""
