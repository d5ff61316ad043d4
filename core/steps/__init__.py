"""Pipeline steps. Each module holds the steps of one stage; ``registry`` orders them by name."""
