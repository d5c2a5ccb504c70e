from mlx_rsi.cli import main

main()
