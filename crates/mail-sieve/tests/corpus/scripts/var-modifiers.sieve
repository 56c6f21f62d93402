require ["variables","fileinto"];
set "a" "Hello World";
set :upper "b" "${a}";
set :lowerfirst "c" "${b}";
set :upperfirst "d" "hello";
set :length "n" "${a}";
set :quotewildcard "q" "a*b?c";
fileinto "${b}-${c}-${d}-${n}-${q}";
