from stratos_deployer.main import run

run()
