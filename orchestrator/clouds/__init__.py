"""The only importers of the cloud SDKs: client factories, retry configuration, SDK error → our error."""
