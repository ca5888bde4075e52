from manual_deploy.cli import run

run()
