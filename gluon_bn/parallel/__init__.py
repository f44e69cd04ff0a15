"""Several devices and several machines: shards, synchronized BN, kvstore workers and nodes."""
