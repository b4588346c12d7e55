from stratos_selector.main import run

run()
