"""The Azure provider: NC-series (and successor) VMs, one resource group per run."""
