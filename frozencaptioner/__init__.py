"""FrozenCaptioner tooling around the remote-code model folder: tiny real models for tests and the demo, Hub-format
saving and the `frozencaptioner` command line."""
