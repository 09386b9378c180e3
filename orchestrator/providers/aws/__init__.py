"""AWS EC2 as a provider: :mod:`.instance` launches, lists and terminates; :mod:`.network` keys, group, user-data."""
