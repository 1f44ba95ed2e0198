"""HTTP routers, thin: parse -> call one service -> shape the response."""
