if header :frob "a" "b" { keep; }
