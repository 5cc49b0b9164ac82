from toolkit._cli import main

main()
