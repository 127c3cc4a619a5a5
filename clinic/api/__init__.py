"""The REST API (``/api/...``): thin DRF views over the services and selectors of the apps below."""
