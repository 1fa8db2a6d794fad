"""evix_client: the `evix` command. Quick to start: no trio, cffi or capnp on its import path."""
