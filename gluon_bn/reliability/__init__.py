"""What keeps a run safe: user errors, atomic files, checkpoints, the record, fault injection for tests."""
