pytest_plugins = ["moola.plugin"]
