from stratos_trainer.main import run

run()
