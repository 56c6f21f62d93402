require ["variables","fileinto"];
set "a" "1"; set "b" "${a}${a}"; set "c" "${b}${b}${b}"; fileinto "n${c}";
