import sys, collections
own=collections.Counter(); incl=collections.Counter(); total=0
for line in open(sys.argv[1]):
    stack,_,n=line.rstrip().rpartition(' '); n=int(n); total+=n
    frames=stack.split(';')
    own[frames[-1]]+=n
    for f in set(frames): incl[f]+=n
print("total",total)
print("--- self"); [print(f"{v/total:6.1%} {k}") for k,v in own.most_common(25)]
print("--- inclusive"); [print(f"{v/total:6.1%} {k}") for k,v in incl.most_common(40)]
