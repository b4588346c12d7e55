from stratos_cli.app import main

main()
