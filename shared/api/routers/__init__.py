"""The admin API's routes by area: health, profiles, metrics, failures, metrics history, console."""
