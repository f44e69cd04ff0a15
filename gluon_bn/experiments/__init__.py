"""The chapter's exercises as measured experiments, and precise BN."""
