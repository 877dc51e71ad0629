"""Parts defined outside vaekit, registered the way a user's own module would: the plugin tests
(tests/test_plugins.py) train, evaluate, save and load them through the command line."""
