"""Shared ground: settings, days, the object store and landing layout."""
