"""A supervised run of the chapter's training, as every command and notebook makes one: its settings, the checks before it starts, checkpointed training, and what it collects."""
