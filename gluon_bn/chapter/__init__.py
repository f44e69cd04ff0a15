"""The chapter's own code: its BatchNorm layer, its LeNet, Fashion-MNIST and its training loop."""
