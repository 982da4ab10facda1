import Kofka
print("kofka \(Kofka.version)")
