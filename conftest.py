pytest_plugins = ["moola.gates.plugin"]
