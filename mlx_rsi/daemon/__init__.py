"""`mlx-rsi watch`: the daemon that runs improvement cycles when new sessions warrant it.

Modules: :mod:`.events` (watchdog → debounced batches), :mod:`.quiet` (AC power,
idle CPU, busy hours), :mod:`.triggers` (new examples, cron, the decision),
:mod:`.runner` (the loop, locks, signals, the cycle), :mod:`.state` (the state
file `watch status` reads), :mod:`.priority` (nice / macOS background QoS) and
:mod:`.service` (launchd agent, systemd unit). Nothing here imports an ML
framework; the cycle does, when it starts.
"""
