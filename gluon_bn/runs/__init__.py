"""A supervised run of the chapter's training, as every command and notebook makes one.

Its settings, the checks before it starts, checkpointed training, and what it collects.
"""
