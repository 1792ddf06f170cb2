from aictl.cli.main import run

run()
