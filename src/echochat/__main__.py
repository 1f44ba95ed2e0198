from echochat.cli.main import main

main()
