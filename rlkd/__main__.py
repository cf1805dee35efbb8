from rlkd.cli import main

main()
