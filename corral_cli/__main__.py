from corral_cli.main import main

main()
