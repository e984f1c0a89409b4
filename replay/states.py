"""Machine activity states and pool roles (shared by replay.machine and replay.routing)."""

IDLE, PREFILL, DECODE = 0, 1, 2
PROMPT, TOKEN, MIXED = 0, 1, 2
ROLE_NAMES = ("prompt", "token", "mixed")
