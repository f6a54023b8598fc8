from rerank.cli import console_main

console_main()
