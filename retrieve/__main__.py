from retrieve.command import main

main()
