module fxgraph.example/player

go 1.19
