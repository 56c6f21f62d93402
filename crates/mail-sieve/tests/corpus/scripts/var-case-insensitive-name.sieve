require ["variables","fileinto"];
set "Folder" "abc";
fileinto "${FOLDER}";
