"""The nightly's stage calls, composed from the stage packages."""
