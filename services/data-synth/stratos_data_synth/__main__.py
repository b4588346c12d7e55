from stratos_data_synth.main import run

run()
