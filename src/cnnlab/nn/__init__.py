"""Shared building blocks, one small file per kind. Import from the submodules, e.g.
`from cnnlab.nn.conv import ConvBNAct`."""
