require ["encoded-character","fileinto"];
fileinto "${unicode:52 e9}union";
