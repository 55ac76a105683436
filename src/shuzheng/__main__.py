from shuzheng.cli import main

main()
