pytest_plugins = ["edgesmith.testing.fixtures"]
