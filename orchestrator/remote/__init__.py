"""Talking to a machine: transports (local shell, pinned SSH, bastion), the detached payload, prepare, clean-up.

Nothing here imports a provider: a :class:`orchestrator.machine.Machine` says how to reach it.
"""
