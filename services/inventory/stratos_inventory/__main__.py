from stratos_inventory.main import run

run()
