"""Example mgfrec plugins: registered only through entry points in this package's pyproject.toml."""
