"""The replicated lock service: commands, the state machine, watch events, the wire protocol."""
