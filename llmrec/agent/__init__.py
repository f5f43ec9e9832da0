"""The chat-style API (agent stage): title resolution, message parsing, multi-turn sessions."""
